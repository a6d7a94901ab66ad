//! The database's view of a canary: what each version costs the shared database. Canary judges
//! look at a version's own errors and latency; an expand/contract release hurts where both
//! versions meet, in the database (the new version's query on the new column misses an index,
//! scans, holds locks). Each version's sessions carry a tag ([`session_tag`]); between canary
//! steps, while both versions serve, a sampler attributes the database's statement statistics
//! to the tags (PostgreSQL: `pg_stat_statements` deltas of the statements each tag's sessions
//! ran, and `pg_stat_activity` samples of their state; MySQL/MariaDB: `performance_schema`'s
//! statement counters of each tagged thread) and [`load_gates`] judges the target against the
//! current version, as the health gates judge errors and latency.

use std::time::Duration;

use serde::Serialize;

use crate::release::gate::{GateResult, GateVerdict};

/// The longest tag PostgreSQL keeps in `application_name` (NAMEDATALEN - 1 bytes).
const MAX_TAG_BYTES: usize = 63;

/// The tag a version's database sessions carry: PostgreSQL's `application_name`,
/// MySQL/MariaDB's connection attribute `program_name`. `v<version>:<function>`, from the
/// Lambda's own `AWS_LAMBDA_FUNCTION_VERSION` and `AWS_LAMBDA_FUNCTION_NAME`, cut to 63 bytes
/// (the function's end goes first, so the version always survives). The alias role (current or
/// target) is not in it: a version does not know it, and it changes as the deployment goes on;
/// the monitor knows it from the deployment.
pub fn session_tag(function: &str, version: &str) -> String {
    let mut tag = format!("v{version}:{function}");
    if tag.len() > MAX_TAG_BYTES {
        let mut end = MAX_TAG_BYTES;
        while !tag.is_char_boundary(end) {
            end -= 1;
        }
        tag.truncate(end);
    }
    tag
}

/// Where a sample's counters come from, which decides what a call's work is measured in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadSource {
    /// PostgreSQL: statements' shared blocks (hit + read).
    #[default]
    PgStatStatements,
    /// MySQL/MariaDB: statements' rows examined (there are no shared-block counters).
    PerformanceSchema,
}

/// What one version's sessions cost the database over a sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DatabaseLoad {
    pub version: String,
    /// The sessions' tag.
    pub tag: String,
    pub source: LoadSource,
    /// Calls, execution time, shared blocks (hit + read; PostgreSQL), rows examined
    /// (MySQL/MariaDB) and rows returned or affected of the statements the version's sessions ran during the
    /// sample. PostgreSQL: a statement both versions ran counts for each by its share of the
    /// samples that showed it; MySQL/MariaDB counts per session, exactly.
    pub calls: f64,
    pub exec_ms: f64,
    pub blocks: f64,
    pub rows_examined: f64,
    pub rows: f64,
    /// Activity samples taken, and of the version's sessions across them: seen, running a
    /// statement, and waiting for a lock.
    pub samples: u64,
    pub session_samples: u64,
    pub active_samples: u64,
    pub lock_wait_samples: u64,
    /// The most sessions of the version seen at once.
    pub sessions: u64,
}

impl DatabaseLoad {
    /// Execution time per call, in milliseconds (none without calls).
    pub fn ms_per_call(&self) -> Option<f64> {
        (self.calls > 0.0).then(|| self.exec_ms / self.calls)
    }

    /// Shared blocks touched per call (none without calls): a sequential scan where an index
    /// would do shows here first.
    pub fn blocks_per_call(&self) -> Option<f64> {
        (self.calls > 0.0).then(|| self.blocks / self.calls)
    }

    /// Rows examined per call (none without calls): MySQL/MariaDB's sign of a scan.
    pub fn rows_examined_per_call(&self) -> Option<f64> {
        (self.calls > 0.0).then(|| self.rows_examined / self.calls)
    }

    /// The values the gate monitor publishes: metric name, CloudWatch unit, value (per-call
    /// values only with calls; blocks from PostgreSQL, rows examined from MySQL/MariaDB).
    pub fn metrics(&self) -> Vec<(&'static str, &'static str, f64)> {
        let mut metrics = vec![
            ("DatabaseCalls", "Count", self.calls),
            ("DatabaseLockWaitShare", "None", self.lock_wait_share()),
            ("DatabaseSessions", "Count", self.sessions as f64),
        ];
        metrics.extend(
            self.ms_per_call()
                .map(|v| ("DatabaseTimePerCall", "Milliseconds", v)),
        );
        metrics.extend(
            (self.calls > 0.0).then(|| ("DatabaseRowsPerCall", "Count", self.rows / self.calls)),
        );
        metrics.extend(match self.source {
            LoadSource::PgStatStatements => self
                .blocks_per_call()
                .map(|v| ("DatabaseBlocksPerCall", "Count", v)),
            LoadSource::PerformanceSchema => self
                .rows_examined_per_call()
                .map(|v| ("DatabaseRowsExaminedPerCall", "Count", v)),
        });
        metrics
    }

    /// Of the version's sessions seen, the share waiting for a lock (0 when none seen).
    pub fn lock_wait_share(&self) -> f64 {
        if self.session_samples > 0 {
            self.lock_wait_samples as f64 / self.session_samples as f64
        } else {
            0.0
        }
    }
}

/// How the per-version database gates judge.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadBudget {
    /// How long to sample (zero: the gates are off).
    pub sample: Duration,
    /// The app's own database roles: only their sessions count, whatever tag another role's
    /// session carries (a tag is a label, not a credential). Required when the gates are on.
    pub roles: Vec<String>,
    /// The target's time per call above this multiple of the current version's fails.
    pub max_time_ratio: f64,
    /// The target's blocks per call above this multiple of the current version's fails.
    pub max_blocks_ratio: f64,
    /// The target's rows examined per call above this multiple of the current version's fails.
    pub max_rows_examined_ratio: f64,
    /// Fewer calls of either version in the sample is inconclusive.
    pub min_calls: u64,
    /// Below this time per call the target passes whatever the ratio (noise, not harm).
    pub min_ms_per_call: f64,
    /// Below this many blocks per call the target passes whatever the ratio.
    pub min_blocks_per_call: f64,
    /// Below this many rows examined per call the target passes whatever the ratio.
    pub min_rows_examined_per_call: f64,
}

impl Default for LoadBudget {
    fn default() -> Self {
        LoadBudget {
            sample: Duration::ZERO,
            roles: Vec::new(),
            max_time_ratio: 2.0,
            max_blocks_ratio: 4.0,
            max_rows_examined_ratio: 4.0,
            min_calls: 50,
            min_ms_per_call: 1.0,
            min_blocks_per_call: 16.0,
            min_rows_examined_per_call: 100.0,
        }
    }
}

impl LoadBudget {
    /// Whether the gates run at all.
    pub fn enabled(&self) -> bool {
        !self.sample.is_zero()
    }
}

/// The per-version database gates of `target` against `current`: `database:sample`
/// (inconclusive below the minimum calls of either), else `database:time-per-call` and, by
/// what the sampler counts, `database:blocks-per-call` (PostgreSQL) or
/// `database:rows-examined-per-call` (MySQL/MariaDB).
pub fn load_gates(
    target: &DatabaseLoad,
    current: &DatabaseLoad,
    budget: &LoadBudget,
) -> Vec<GateResult> {
    let seconds = budget.sample.as_secs_f64();
    if let Some(thin) = [target, current]
        .into_iter()
        .find(|load| load.calls < budget.min_calls as f64)
    {
        return vec![GateResult::new(
            "database:sample",
            GateVerdict::Inconclusive(format!(
                "{} calls of version {}'s statements in the {seconds:.0} s sample, fewer than the {} needed to judge",
                thin.calls, thin.version, budget.min_calls
            )),
        )];
    }
    let (new, old) = (&target.version, &current.version);
    let work = match target.source {
        LoadSource::PgStatStatements => (
            "database:blocks-per-call",
            "blocks per call",
            "blocks",
            target.blocks_per_call(),
            current.blocks_per_call(),
            budget.max_blocks_ratio,
            budget.min_blocks_per_call,
        ),
        LoadSource::PerformanceSchema => (
            "database:rows-examined-per-call",
            "rows examined per call",
            "rows",
            target.rows_examined_per_call(),
            current.rows_examined_per_call(),
            budget.max_rows_examined_ratio,
            budget.min_rows_examined_per_call,
        ),
    };
    let mut gates = Vec::new();
    for (gate, what, unit, value, base, ratio, floor) in [
        (
            "database:time-per-call",
            "statement time per call",
            "ms",
            target.ms_per_call(),
            current.ms_per_call(),
            budget.max_time_ratio,
            budget.min_ms_per_call,
        ),
        work,
    ] {
        // With `min_calls` 0 a version may have no calls: nothing measured passes.
        let (value, base) = (value.unwrap_or(0.0), base.unwrap_or(0.0));
        let limit = (base * ratio).max(floor);
        let verdict = if value > limit {
            let times = if base > 0.0 {
                format!("{:.1} x", value / base)
            } else {
                "above".to_owned()
            };
            GateVerdict::Fail(format!(
                "version {new}'s {what} is {value:.2} {unit}, {times} version {old}'s {base:.2} {unit} (budget {ratio:.1} x)"
            ))
        } else {
            GateVerdict::Pass
        };
        gates.push(GateResult::new(gate, verdict).measured(
            Some(value),
            Some(format!(
                "<= {limit:.2} {unit} ({ratio:.1} x version {old}'s, at least {floor})"
            )),
        ));
    }
    gates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(version: &str, calls: f64, exec_ms: f64, blocks: f64) -> DatabaseLoad {
        DatabaseLoad {
            version: version.to_owned(),
            tag: session_tag("api", version),
            calls,
            exec_ms,
            blocks,
            ..DatabaseLoad::default()
        }
    }

    fn verdicts(gates: &[GateResult]) -> Vec<(&str, &str)> {
        gates
            .iter()
            .map(|g| (g.gate.as_str(), g.verdict.name()))
            .collect()
    }

    #[test]
    fn the_target_is_judged_against_the_current_version() {
        let budget = LoadBudget {
            sample: Duration::from_secs(10),
            ..LoadBudget::default()
        };
        let old = load("1", 1_000.0, 300.0, 4_000.0);
        // (target, expected): alike passes; a scan fails both; a slow call fails the time only;
        // cheap calls stay under the floors whatever the ratio; too few calls is inconclusive.
        let table: &[(DatabaseLoad, &[(&str, &str)])] = &[
            (
                load("2", 900.0, 290.0, 3_700.0),
                &[
                    ("database:time-per-call", "pass"),
                    ("database:blocks-per-call", "pass"),
                ],
            ),
            (
                load("2", 900.0, 9_000.0, 150_000.0),
                &[
                    ("database:time-per-call", "fail"),
                    ("database:blocks-per-call", "fail"),
                ],
            ),
            (
                load("2", 900.0, 2_700.0, 3_600.0),
                &[
                    ("database:time-per-call", "fail"),
                    ("database:blocks-per-call", "pass"),
                ],
            ),
            (
                load("2", 1_000.0, 900.0, 12_000.0),
                &[
                    ("database:time-per-call", "pass"),
                    ("database:blocks-per-call", "pass"),
                ],
            ),
            (
                load("2", 20.0, 9_000.0, 150_000.0),
                &[("database:sample", "inconclusive")],
            ),
        ];
        for (target, expected) in table {
            assert_eq!(
                verdicts(&load_gates(target, &old, &budget)),
                *expected,
                "{target:?}"
            );
        }
        let scan = load_gates(&load("2", 900.0, 9_000.0, 150_000.0), &old, &budget);
        assert_eq!(
            scan[0].to_string(),
            "database:time-per-call: FAIL: version 2's statement time per call is 10.00 ms, 33.3 x version 1's 0.30 ms (budget 2.0 x) (value 10, threshold <= 1.00 ms (2.0 x version 1's, at least 1))"
        );
        let thin = load_gates(
            &load("2", 900.0, 0.0, 0.0),
            &load("1", 3.0, 1.0, 1.0),
            &budget,
        );
        assert_eq!(
            thin[0].to_string(),
            "database:sample: inconclusive: 3 calls of version 1's statements in the 10 s sample, fewer than the 50 needed to judge"
        );
    }

    #[test]
    fn mysql_loads_are_judged_by_rows_examined() {
        let budget = LoadBudget {
            sample: Duration::from_secs(10),
            ..LoadBudget::default()
        };
        let mysql = |version: &str, exec_ms: f64, rows_examined: f64| DatabaseLoad {
            source: LoadSource::PerformanceSchema,
            rows_examined,
            ..load(version, 1_000.0, exec_ms, 0.0)
        };
        let old = mysql("1", 300.0, 1_000.0);
        // A scan of 50,000 rows a call, still fast on a cached table: the rows give it away.
        let scan = load_gates(&mysql("2", 600.0, 50_000_000.0), &old, &budget);
        assert_eq!(
            verdicts(&scan),
            [
                ("database:time-per-call", "pass"),
                ("database:rows-examined-per-call", "fail")
            ]
        );
        assert!(
            scan[1].to_string().contains(
                "version 2's rows examined per call is 50000.00 rows, 50000.0 x version 1's 1.00 rows"
            ),
            "{}",
            scan[1]
        );
        // Few rows a call stays under the floor whatever the ratio.
        let few = load_gates(&mysql("2", 300.0, 90_000.0), &old, &budget);
        assert_eq!(few[1].verdict, GateVerdict::Pass);
        let names: Vec<&str> = mysql("2", 1.0, 1.0)
            .metrics()
            .into_iter()
            .map(|(name, _, _)| name)
            .collect();
        assert!(names.contains(&"DatabaseRowsExaminedPerCall"), "{names:?}");
        assert!(!names.contains(&"DatabaseBlocksPerCall"), "{names:?}");
    }

    #[test]
    fn a_tag_keeps_the_version_and_fits_postgresql() {
        assert_eq!(session_tag("orders-api", "7"), "v7:orders-api");
        let long = "f".repeat(64);
        let tag = session_tag(&long, "12");
        assert_eq!(tag.len(), 63);
        assert!(tag.starts_with("v12:fff"));
        // Never cut inside a character.
        let tag = session_tag(&"é".repeat(40), "3");
        assert!(tag.len() <= 63 && tag.starts_with("v3:é"), "{tag}");
    }
}
