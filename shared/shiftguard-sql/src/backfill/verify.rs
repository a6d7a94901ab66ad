//! The verification after a pass: old app versions may still insert rows the old way while the
//! backfill sweeps, so "the cursor passed the last key" is not "nothing is pending". A run that
//! finds a swept (or complete) backfill asks the database for the first pending key now: none
//! means complete; some means a new pass from just before that key.

use shiftguard_core::backfill::{Checkpoint, Status};

use super::statements::Statements;
use super::{BackfillError, Event, Runner, now_ms};
use crate::connection::Connection;

/// The checkpoint after a verification that found `first` as the first pending key.
fn verified(checkpoint: &Checkpoint, first: Option<i64>, now_ms: i64) -> Checkpoint {
    let mut next = checkpoint.clone();
    next.updated_at = now_ms;
    next.version += 1;
    match first {
        None => {
            next.status = Status::Complete;
            // Complete since the first verification that found nothing.
            if checkpoint.status != Status::Complete {
                next.completed_at = Some(now_ms);
            }
        }
        Some(first) => {
            next.status = Status::Running;
            next.cursor = Some(first.saturating_sub(1));
            next.passes += 1;
            next.completed_at = None;
        }
    }
    next
}

impl Runner<'_> {
    /// After a pass: is anything pending now? None -> complete. Some -> a new pass from just
    /// before the first pending key. Returns whether the backfill is complete.
    pub(super) async fn verify(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        statements: &Statements,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<bool, BackfillError> {
        let first = self.pending_from(connection, statements).await?;
        observe(&Event::Verified {
            pending_from: first,
        });
        let next = verified(checkpoint, first, now_ms());
        if self.save(connection, &next).await? {
            *checkpoint = next;
        }
        Ok(first.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swept() -> Checkpoint {
        let mut checkpoint = Checkpoint::new("b", 1_000);
        checkpoint.status = Status::Swept;
        checkpoint.cursor = Some(5_000);
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
    fn pending_rows_start_a_new_pass_just_before_the_first() {
        let mut complete = verified(&swept(), None, 2_000);
        complete.cursor = Some(5_000);
        let pass = verified(&complete, Some(42), 3_000);
        assert_eq!(pass.status, Status::Running);
        assert_eq!(pass.cursor, Some(41));
        assert_eq!(pass.passes, 2);
        assert_eq!(pass.completed_at, None);
        // Saturates instead of overflowing at the smallest key.
        assert_eq!(
            verified(&swept(), Some(i64::MIN), 3_000).cursor,
            Some(i64::MIN)
        );
    }
}
