//! The database-health signals a backfill holds on between batches, and the decision: hold
//! while any signal is above its limit. A value that cannot be known (NULL, no replica status)
//! reads as infinitely high, so the backfill fails closed by waiting.

use std::fmt;

use serde::Serialize;

use super::METRIC_NAMESPACE;

/// What a backfill watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Replica lag in milliseconds (`max_replica_lag_ms`).
    ReplicaLag,
    /// The configured `throttle_query`'s number (`throttle_max`).
    ThrottleQuery,
    /// A VACUUM (auto or manual) running on the backfilled table, PostgreSQL (`hold_on_vacuum`).
    Vacuum,
    /// WAL segments waiting to be archived, PostgreSQL (`max_archive_pending`).
    ArchivePending,
    /// `Threads_running`, MySQL/MariaDB (`max_threads_running`).
    ThreadsRunning,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::ReplicaLag => "replica_lag",
            Signal::ThrottleQuery => "throttle_query",
            Signal::Vacuum => "vacuum",
            Signal::ArchivePending => "archive_pending",
            Signal::ThreadsRunning => "threads_running",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One signal's value against its limit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Reading {
    pub signal: Signal,
    pub value: f64,
    pub limit: f64,
}

impl Reading {
    /// Above the limit, or unknown (NaN, infinite).
    pub fn holds(&self) -> bool {
        !(self.value.is_finite() && self.value <= self.limit)
    }
}

/// The first reading that holds the backfill, if any.
pub fn first_hold(readings: &[Reading]) -> Option<&Reading> {
    readings.iter().find(|r| r.holds())
}

/// The Embedded Metric Format line of one hold: metric `ThrottleHolds` (1), dimensions
/// `Backfill` and `Signal`, with the value and the limit.
pub fn hold_emf_line(backfill: &str, reading: &Reading, timestamp_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["Backfill", "Signal"]],
                "Metrics": [{ "Name": "ThrottleHolds", "Unit": "Count" }],
            }],
        },
        "Backfill": backfill,
        "Signal": reading.signal.name(),
        "event": "hold",
        "ThrottleHolds": 1,
        // JSON has no infinity: an unknown value is null.
        "value": reading.value.is_finite().then_some(reading.value),
        "limit": reading.limit,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(signal: Signal, value: f64, limit: f64) -> Reading {
        Reading {
            signal,
            value,
            limit,
        }
    }

    #[test]
    fn a_signal_holds_above_its_limit_or_when_unknown() {
        assert!(!reading(Signal::ReplicaLag, 1500.0, 1500.0).holds());
        assert!(reading(Signal::ReplicaLag, 1500.5, 1500.0).holds());
        assert!(reading(Signal::ThrottleQuery, f64::INFINITY, 0.0).holds());
        assert!(reading(Signal::ThrottleQuery, f64::NAN, 0.0).holds());
        let readings = [
            reading(Signal::ReplicaLag, 10.0, 1500.0),
            reading(Signal::Vacuum, 1.0, 0.0),
            reading(Signal::ThrottleQuery, 9.0, 1.0),
        ];
        assert_eq!(
            first_hold(&readings).map(|r| r.signal),
            Some(Signal::Vacuum)
        );
        assert_eq!(first_hold(&readings[..1]), None);
    }

    #[test]
    fn a_hold_is_one_emf_line_with_the_signal_as_a_dimension() {
        let line = hold_emf_line(
            "users",
            &reading(Signal::Vacuum, 1.0, 0.0),
            1_700_000_000_000,
        );
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        let metrics = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            metrics["Dimensions"],
            serde_json::json!([["Backfill", "Signal"]])
        );
        assert_eq!(metrics["Metrics"][0]["Name"], "ThrottleHolds");
        assert_eq!(value["Signal"], "vacuum");
        assert_eq!(value["ThrottleHolds"], 1);
        let unknown = hold_emf_line("users", &reading(Signal::ReplicaLag, f64::INFINITY, 5.0), 0);
        assert!(unknown.contains("\"value\":null"), "{unknown}");
    }
}
