//! The fence: with an external checkpoint store (DynamoDB), a runner whose lease expired while
//! it was stalled (a long GC pause, a frozen Lambda, a clock ahead) cannot commit a batch next
//! to the runner that took the lease over. The backfilled database keeps, per backfill, in
//! `shiftguard_fence`: an epoch, raised by one by every runner that takes the lease, and the
//! progress of the last batch committed, for the checkpoint's life it belongs to (its
//! `generation`: the checkpoint's creation time, new after a reset). Every batch's transaction
//! ends by writing its progress there *on the condition that its epoch is still the newest*; a
//! stale runner's write matches no row and its batch is rolled back. A runner that takes the
//! lease raises the epoch first (waiting, up to its lock timeout, for a batch in flight to commit
//! or roll back) and then resumes from whichever is further, the external checkpoint or the
//! fence: a batch committed whose external write was lost is not done twice. So progress is
//! exactly once with either store, whatever the `pending` guard. (The SQL store needs no fence:
//! its checkpoint is written inside the batch's transaction, on the condition of its version.)

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
     generation BIGINT NOT NULL, \
     version BIGINT NOT NULL DEFAULT 0, \
     cursor_key TEXT NULL, \
     batches BIGINT NOT NULL DEFAULT 0, \
     rows_updated BIGINT NOT NULL DEFAULT 0)";

/// `$n` on PostgreSQL, `?` elsewhere: the fence's few statements in both spellings.
fn placeholders(dialect: Dialect, sql: &str) -> String {
    match dialect {
        Dialect::Postgres => {
            let mut n = 0;
            sql.split('?')
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part.to_owned()
                    } else {
                        n += 1;
                        format!("${n}{part}")
                    }
                })
                .collect()
        }
        _ => sql.to_owned(),
    }
}

/// The row, if there is none yet.
fn ensure_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "INSERT INTO shiftguard_fence (name, epoch, generation) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING"
        }
        Dialect::MySql => {
            "INSERT IGNORE INTO shiftguard_fence (name, epoch, generation) VALUES (?, 0, ?)"
        }
        Dialect::Sqlite => {
            "INSERT OR IGNORE INTO shiftguard_fence (name, epoch, generation) VALUES (?, 0, ?)"
        }
    }
}

/// The epoch raised by one; the progress forgotten when it belongs to another life of the
/// checkpoint. (`generation` is set last: MySQL reads columns set earlier in a SET as set.)
const RAISE: &str = "UPDATE shiftguard_fence SET epoch = epoch + 1, \
     cursor_key = CASE WHEN generation = ? THEN cursor_key ELSE NULL END, \
     batches = CASE WHEN generation = ? THEN batches ELSE 0 END, \
     rows_updated = CASE WHEN generation = ? THEN rows_updated ELSE 0 END, \
     generation = ? WHERE name = ?";

const SELECT: &str =
    "SELECT epoch, cursor_key, batches, rows_updated FROM shiftguard_fence WHERE name = ?";

/// A batch's progress, written only under the newest epoch and for the checkpoint's life it
/// belongs to. `version` changes with every batch, so a match always changes the row (MySQL
/// counts changed rows, not matched ones).
const ADVANCE: &str = "UPDATE shiftguard_fence SET version = ?, cursor_key = ?, batches = ?, \
     rows_updated = ? WHERE name = ? AND epoch = ? AND generation = ?";

/// A reset: the epoch raised (so no runner from before it can write again) and the progress
/// forgotten. The row itself stays: deleted, it would start again at epoch 0 and hand a new
/// runner the epoch a frozen one still holds.
const RETIRE: &str = "UPDATE shiftguard_fence SET epoch = epoch + 1, generation = -1, \
     cursor_key = NULL, batches = 0, rows_updated = 0 WHERE name = ?";

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
    /// Raises the fence's epoch for this runner, which has just taken the lease, and catches
    /// `checkpoint` up with the fence; the epoch, or `None` when a batch of a runner whose lease
    /// expired is still in flight past the lock timeout (try again later).
    pub(super) async fn claim_fence(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
    ) -> Result<Option<i64>, BackfillError> {
        let failed =
            |e: sqlx::Error| self.store_error(format!("{FENCE_TABLE}: {}", self.sql_error(&e)));
        let dialect = connection.dialect();
        let name = Bind::Text(Some(self.config.name.clone()));
        let generation = Bind::Int(Some(checkpoint.started_at));
        connection
            .create_table(CREATE, FENCE_TABLE)
            .await
            .map_err(failed)?;
        connection
            .execute(ensure_sql(dialect), &[name.clone(), generation.clone()])
            .await
            .map_err(failed)?;
        connection.raw("BEGIN").await.map_err(failed)?;
        let raise = [
            generation.clone(),
            generation.clone(),
            generation.clone(),
            generation,
            name.clone(),
        ];
        let raised = match connection
            .execute(&placeholders(dialect, RAISE), &raise)
            .await
        {
            Ok(_) => {
                connection
                    .fetch_row(
                        &placeholders(dialect, SELECT),
                        &[name],
                        &[Kind::Int, Kind::Text, Kind::Int, Kind::Int],
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        let row = match raised {
            Ok(row) => {
                connection.raw("COMMIT").await.map_err(failed)?;
                row.ok_or_else(|| self.store_error(format!("{FENCE_TABLE}: the row vanished")))?
            }
            Err(e) => {
                let _ = connection.raw("ROLLBACK").await;
                // The row is locked by a stale runner's batch in flight: not this one's turn.
                if classify(&e) == ErrorClass::Timeout {
                    return Ok(None);
                }
                return Err(failed(e));
            }
        };
        let cursor = match row[1].text() {
            Some(text) => Some(Key::parse(text).map_err(|e| {
                let text = if self.config.tuning.show_keys {
                    text
                } else {
                    "(hidden)"
                };
                self.store_error(format!(
                    "{FENCE_TABLE}: the cursor {text} is not a key: {e}"
                ))
            })?),
            None => None,
        };
        let fenced = Fenced {
            epoch: row[0].int().unwrap_or(0),
            cursor,
            batches: row[2].int().unwrap_or(0),
            rows_updated: row[3].int().unwrap_or(0),
        };
        caught_up(checkpoint, &fenced);
        Ok(Some(fenced.epoch))
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
            Bind::Int(Some(next.started_at)),
        ];
        let sql = placeholders(connection.dialect(), ADVANCE);
        Ok(connection.execute(&sql, &binds).await? == 1)
    }

    /// A reset: raises the fence's epoch and forgets its progress, so that no runner from
    /// before the reset, however long it was frozen, can commit a batch after it.
    pub(super) async fn retire_fence(
        &self,
        connection: &mut Connection,
    ) -> Result<(), BackfillError> {
        let failed =
            |e: sqlx::Error| self.store_error(format!("{FENCE_TABLE}: {}", self.sql_error(&e)));
        connection
            .create_table(CREATE, FENCE_TABLE)
            .await
            .map_err(failed)?;
        let sql = placeholders(connection.dialect(), RETIRE);
        connection
            .execute(&sql, &[Bind::Text(Some(self.config.name.clone()))])
            .await
            .map_err(failed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_numbers_its_placeholders() {
        assert_eq!(
            placeholders(
                Dialect::Postgres,
                "UPDATE f SET a = ? WHERE b = ? AND c = ?"
            ),
            "UPDATE f SET a = $1 WHERE b = $2 AND c = $3"
        );
        assert_eq!(placeholders(Dialect::MySql, "a = ?"), "a = ?");
    }

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
