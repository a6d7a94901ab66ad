//! The verification after a pass: old app versions may still insert rows the old way while the
//! backfill sweeps, so "the cursor passed the last key" is not "nothing is pending". A run that
//! finds a swept (or complete) backfill asks the database for the first pending key now: none
//! means complete; some means a new pass from the key before it (from the start when there is
//! none: a key of any type has no arithmetic predecessor, so the database names it).

use shiftguard_core::backfill::{Checkpoint, Key, Status};

use super::statements::Statements;
use super::{BackfillError, Event, Runner, now_ms};
use crate::connection::Connection;

/// The checkpoint after a verification. `pending`: none found, or a new pass starting after
/// the key before the first pending one (`None`: from the start).
fn verified(checkpoint: &Checkpoint, pending: Option<Option<Key>>, now_ms: i64) -> Checkpoint {
    let mut next = checkpoint.clone();
    next.updated_at = now_ms;
    next.version += 1;
    match pending {
        None => {
            next.status = Status::Complete;
            // Complete since the first verification that found nothing.
            if checkpoint.status != Status::Complete {
                next.completed_at = Some(now_ms);
            }
        }
        Some(start_after) => {
            next.status = Status::Running;
            next.cursor = start_after;
            next.passes += 1;
            next.completed_at = None;
        }
    }
    next
}

impl Runner<'_> {
    /// After a pass: is anything pending now? None -> complete. Some -> a new pass from the key
    /// before the first pending one. Returns whether the backfill is complete.
    pub(super) async fn verify(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        statements: &Statements,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<bool, BackfillError> {
        let first = self.pending_from(connection, statements).await?;
        let pending = match &first {
            None => None,
            // A shard's first key is its range's start.
            Some(first) => Some(
                self.key_before(connection, statements, first)
                    .await?
                    .or_else(|| self.range.after.clone()),
            ),
        };
        let complete = first.is_none();
        observe(&Event::Verified {
            pending_from: first,
        });
        let next = verified(checkpoint, pending, now_ms());
        if self.save(connection, &next).await? {
            *checkpoint = next;
        }
        Ok(complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swept() -> Checkpoint {
        let mut checkpoint = Checkpoint::new("b", 1_000);
        checkpoint.status = Status::Swept;
        checkpoint.cursor = Some(Key::int(5_000));
        checkpoint.version = 10;
        checkpoint
    }

    #[test]
    fn nothing_pending_completes_and_keeps_the_first_completion_time() {
        let complete = verified(&swept(), None, 2_000);
        assert_eq!(complete.status, Status::Complete);
        assert_eq!(complete.completed_at, Some(2_000));
        assert_eq!((complete.version, complete.passes), (11, 1));
        let again = verified(&complete, None, 3_000);
        assert_eq!(again.completed_at, Some(2_000));
        assert_eq!(again.updated_at, 3_000);
    }

    #[test]
    fn pending_rows_start_a_new_pass_after_the_key_before_the_first() {
        let complete = verified(&swept(), None, 2_000);
        let pass = verified(&complete, Some(Some(Key::int(41))), 3_000);
        assert_eq!(pass.status, Status::Running);
        assert_eq!(pass.cursor, Some(Key::int(41)));
        assert_eq!(pass.passes, 2);
        assert_eq!(pass.completed_at, None);
        // The first pending row is the table's first: the pass starts at the beginning.
        assert_eq!(verified(&swept(), Some(None), 3_000).cursor, None);
    }
}
