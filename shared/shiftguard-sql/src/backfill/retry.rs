//! The retry decision after a batch attempt fails, and the tally of one batch's attempts. The
//! error's class (decided once, in `crate::error`) and the run's budget decide: a permanent
//! error marks the backfill failed; a transient one is retried with exponential backoff until
//! `max_retries` is used up, unless the backoff would cross the run's deadline. Errors and
//! retries are counted apart: an error that ends the run is not a retry.

use std::time::Duration;

use shiftguard_core::backfill::backoff;

use super::DEADLINE_SLACK;
use crate::error::ErrorClass;

/// The failed attempts of one batch, and how many of them were retried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Attempts {
    pub errors: u32,
    pub retries: u32,
}

/// What to do after a batch attempt failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Retry {
    /// A permanent error: mark the backfill failed.
    Fail,
    /// Transient, but the retry limit is used up: stop with the error kept.
    GiveUp,
    /// The backoff would cross the deadline: stop with the checkpoint as it is.
    Deadline,
    /// Wait this long, then try the batch again.
    After(Duration),
}

/// The decision after the `attempt`-th failure (from 1) of one batch with `time_left` before the
/// deadline; `jitter` in [0, 1) spreads the backoff.
pub(super) fn decide_retry(
    class: ErrorClass,
    attempt: u32,
    max_retries: u32,
    time_left: Duration,
    jitter: f64,
) -> Retry {
    if class == ErrorClass::Permanent {
        return Retry::Fail;
    }
    if attempt > max_retries {
        return Retry::GiveUp;
    }
    let delay = backoff(attempt - 1, jitter);
    if delay + DEADLINE_SLACK > time_left {
        Retry::Deadline
    } else {
        Retry::After(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn permanent_errors_fail_and_transient_ones_retry_within_the_limit() {
        for class in [
            ErrorClass::Timeout,
            ErrorClass::Transient,
            ErrorClass::Connection,
        ] {
            assert_eq!(
                decide_retry(class, 1, 8, HOUR, 0.0),
                Retry::After(backoff(0, 0.0)),
                "{class:?}"
            );
            assert_eq!(
                decide_retry(class, 8, 8, HOUR, 0.5),
                Retry::After(backoff(7, 0.5))
            );
            assert_eq!(decide_retry(class, 9, 8, HOUR, 0.5), Retry::GiveUp);
        }
        assert_eq!(
            decide_retry(ErrorClass::Permanent, 1, 8, HOUR, 0.0),
            Retry::Fail
        );
        assert_eq!(
            decide_retry(ErrorClass::Transient, 1, 0, HOUR, 0.0),
            Retry::GiveUp
        );
    }

    #[test]
    fn a_backoff_that_would_cross_the_deadline_stops_the_run() {
        let first = backoff(0, 0.0);
        let just_enough = first + DEADLINE_SLACK;
        assert_eq!(
            decide_retry(ErrorClass::Timeout, 1, 8, just_enough, 0.0),
            Retry::After(first)
        );
        assert_eq!(
            decide_retry(
                ErrorClass::Timeout,
                1,
                8,
                just_enough - Duration::from_millis(1),
                0.0
            ),
            Retry::Deadline
        );
        assert_eq!(
            decide_retry(ErrorClass::Transient, 1, 8, Duration::ZERO, 0.0),
            Retry::Deadline
        );
        // Permanent errors and an exhausted budget are decided before the clock.
        assert_eq!(
            decide_retry(ErrorClass::Permanent, 1, 8, Duration::ZERO, 0.0),
            Retry::Fail
        );
        assert_eq!(
            decide_retry(ErrorClass::Transient, 9, 8, Duration::ZERO, 0.0),
            Retry::GiveUp
        );
    }
}
