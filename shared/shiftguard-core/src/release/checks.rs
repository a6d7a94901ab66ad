//! Named checks for the cutover and contract gates, modelled on the analysis templates of
//! progressive-delivery controllers: each check measures one number, either with a read-only
//! SQL query or from CloudWatch, and compares it with a threshold. A check with nothing to
//! judge on (no row, NULL, too few invocations) is *inconclusive*, a verdict of its own.
//!
//! ```toml
//! [[check]]
//! name  = "display-name-mismatches"
//! gates = ["cutover"]
//! query = "SELECT count(*) FROM users WHERE display_name <> full_name"
//! max   = 0
//!
//! [[check]]
//! name            = "primary-error-rate"
//! metric          = "error_rate"      # error_rate | p95 | p99 (ms) of the alias's primary version
//! max             = 0.01
//! window_minutes  = 15
//! min_invocations = 100
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::release::gate::{GateResult, GateSelection, GateVerdict, VersionMetrics};

/// The two approvals that follow a traffic shift (DESIGN.md steps 5 and 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateKind {
    /// Flip the flag: the backfill is complete and the new representation holds.
    Cutover,
    /// Run the contract migration: nothing old can run any more.
    Contract,
}

impl fmt::Display for GateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GateKind::Cutover => "cutover",
            GateKind::Contract => "contract",
        })
    }
}

/// What a metric check measures on a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Errors / invocations.
    ErrorRate,
    /// Duration p95, milliseconds.
    P95,
    /// Duration p99, milliseconds.
    P99,
}

/// One `[[check]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub name: String,
    /// The gates that run it (default: cutover).
    #[serde(default = "default_gates")]
    pub gates: Vec<GateKind>,
    /// A read-only query returning one row with one number.
    pub query: Option<String>,
    /// Or a CloudWatch measure of the alias's primary version.
    pub metric: Option<Metric>,
    /// Passes when the value is at most this.
    pub max: Option<f64>,
    /// Passes when the value is at least this.
    pub min: Option<f64>,
    /// SQL: the query's time limit (default 5000).
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// Metric: the window, in whole minutes (default 15).
    #[serde(default = "default_window_minutes")]
    pub window_minutes: u64,
    /// Metric: fewer invocations in the window is inconclusive (default 50).
    #[serde(default = "default_min_invocations")]
    pub min_invocations: u64,
}

fn default_gates() -> Vec<GateKind> {
    vec![GateKind::Cutover]
}

fn default_statement_timeout_ms() -> u64 {
    5_000
}

fn default_window_minutes() -> u64 {
    15
}

fn default_min_invocations() -> u64 {
    50
}

/// Settings of the gates themselves (`[gates]`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesConfig {
    /// Backfills that must be complete now for the cutover (default: every `[[backfill]]`).
    pub cutover_backfills: Option<Vec<String>>,
    /// Backfills that must be complete now for the contract (default: every `[[backfill]]`).
    pub contract_backfills: Option<Vec<String>>,
    /// The contract gate's observation window: no incompatible version may have been invoked
    /// in it (default 60 minutes).
    #[serde(default = "default_observation_minutes")]
    pub observation_minutes: u64,
    /// Other functions that use the same database (workers, scheduled jobs); their live
    /// versions must be compatible with the contract too.
    #[serde(default)]
    pub shared_functions: Vec<String>,
    /// Functions tagged `shiftguard:database` with this value are found and checked too.
    pub database_tag: Option<String>,
    /// The cutover judges the primary version's health (errors, p95, p99 by the hooks' default
    /// budget) over this many minutes when no `[[check]]` of the cutover reads a metric
    /// (default 15; 0: not at all).
    #[serde(default = "default_cutover_health_minutes")]
    pub cutover_health_minutes: u64,
    /// Gates evaluated, recorded and published but not deciding (observe-only, to roll a new
    /// gate out safely): names or prefixes ending in `*`, e.g. `["health:p99", "check:*"]`.
    #[serde(default)]
    pub observe: GateSelection,
}

impl Default for GatesConfig {
    fn default() -> Self {
        GatesConfig {
            cutover_backfills: None,
            contract_backfills: None,
            observation_minutes: default_observation_minutes(),
            shared_functions: Vec::new(),
            database_tag: None,
            cutover_health_minutes: default_cutover_health_minutes(),
            observe: GateSelection::default(),
        }
    }
}

fn default_cutover_health_minutes() -> u64 {
    15
}

fn default_observation_minutes() -> u64 {
    60
}

/// The longest window a check or the contract's observation may span (30 days).
pub const MAX_WINDOW_MINUTES: u64 = 30 * 24 * 60;

/// The tag that marks a function as sharing the database (value: `[gates] database_tag`).
pub const DATABASE_TAG: &str = "shiftguard:database";

impl CheckConfig {
    /// Why this check cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !crate::names::is_name(&self.name) {
            return Some("name must be 1-100 letters, digits, `_` or `-`".to_owned());
        }
        if self.query.is_some() == self.metric.is_some() {
            return Some("give exactly one of `query` and `metric`".to_owned());
        }
        if self.max.is_none() && self.min.is_none() {
            return Some("give a threshold: `max`, `min` or both".to_owned());
        }
        if [self.max, self.min]
            .iter()
            .flatten()
            .any(|t| !t.is_finite())
        {
            return Some("thresholds must be finite numbers".to_owned());
        }
        if self.gates.is_empty() {
            return Some("`gates` names no gate".to_owned());
        }
        if let Some(query) = &self.query {
            if !is_select(query) {
                return Some(
                    "`query` must be one SELECT (or WITH … SELECT): checks only read".to_owned(),
                );
            }
            if let Some(problem) = crate::sql_fragments::query_problem("`query`", query) {
                return Some(problem);
            }
            if let Err(problem) = crate::settings::within(
                "statement_timeout_ms",
                self.statement_timeout_ms,
                1..=3_600_000,
            ) {
                return Some(problem);
            }
        }
        if self.metric.is_some() && !(1..=MAX_WINDOW_MINUTES).contains(&self.window_minutes) {
            return Some(format!(
                "window_minutes must be between 1 and {MAX_WINDOW_MINUTES} (30 days)"
            ));
        }
        if self.metric.is_some() && self.min_invocations == 0 {
            return Some(
                "min_invocations must be at least 1: no traffic is nothing to judge on".to_owned(),
            );
        }
        if let Err(problem) = crate::settings::within(
            "min_invocations",
            self.min_invocations,
            0..=1_000_000_000_000,
        ) {
            return Some(problem);
        }
        None
    }

    /// The threshold as text: `<= 0`, `>= 1`, or both.
    pub fn threshold(&self) -> String {
        match (self.min, self.max) {
            (Some(min), Some(max)) => format!(">= {min} and <= {max}"),
            (Some(min), None) => format!(">= {min}"),
            (None, Some(max)) => format!("<= {max}"),
            (None, None) => String::new(),
        }
    }

    /// The verdict on a measured value; `None` (no row, NULL) is inconclusive.
    pub fn judge(&self, value: Option<f64>) -> GateResult {
        let verdict = match value.filter(|v| !v.is_nan()) {
            None => GateVerdict::Inconclusive("the query returned no value".to_owned()),
            Some(v) => match (self.min, self.max) {
                (Some(min), _) if v < min => {
                    GateVerdict::Fail(format!("{v} is below the minimum {min}"))
                }
                (_, Some(max)) if v > max => {
                    GateVerdict::Fail(format!("{v} is above the maximum {max}"))
                }
                _ => GateVerdict::Pass,
            },
        };
        self.result(value, verdict)
    }

    /// The verdict on a version's metrics: inconclusive below the minimum sample or without
    /// duration data.
    pub fn judge_metrics(&self, metrics: &VersionMetrics) -> GateResult {
        let version = &metrics.version;
        if metrics.invocations < self.min_invocations as f64 {
            let verdict = GateVerdict::Inconclusive(format!(
                "{} invocations of version {version} in {} min, fewer than the {} needed to judge",
                metrics.invocations, self.window_minutes, self.min_invocations
            ));
            return self.result(None, verdict);
        }
        let value = match self.metric {
            Some(Metric::ErrorRate) | None => Some(metrics.error_rate()),
            Some(Metric::P95) => metrics.p95_ms,
            Some(Metric::P99) => metrics.p99_ms,
        };
        match value {
            None => self.result(
                None,
                GateVerdict::Inconclusive(format!("no duration data for version {version}")),
            ),
            value => self.judge(value),
        }
    }

    fn result(&self, value: Option<f64>, verdict: GateVerdict) -> GateResult {
        GateResult::new(format!("check:{}", self.name), verdict)
            .measured(value, Some(self.threshold()))
    }
}

/// Whether `query` is a single read statement by its first word: SELECT or WITH (the
/// read-only transaction it runs in is what actually refuses writes).
fn is_select(query: &str) -> bool {
    let text = query.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
    let first: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    first.eq_ignore_ascii_case("select") || first.eq_ignore_ascii_case("with")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> CheckConfig {
        toml::from_str(toml_text).expect("check")
    }

    #[test]
    fn thresholds_and_inconclusive() {
        let at_most_zero = check("name = \"m\"\nquery = \"SELECT count(*) FROM t\"\nmax = 0");
        assert_eq!(at_most_zero.problem(), None);
        assert_eq!(at_most_zero.gates, [GateKind::Cutover]);
        assert_eq!(
            at_most_zero.judge(Some(0.0)).to_string(),
            "check:m: pass (value 0, threshold <= 0)"
        );
        assert_eq!(
            at_most_zero.judge(Some(3.0)).to_string(),
            "check:m: FAIL: 3 is above the maximum 0 (value 3, threshold <= 0)"
        );
        assert!(matches!(
            at_most_zero.judge(None).verdict,
            GateVerdict::Inconclusive(_)
        ));
        let band = check("name = \"b\"\nquery = \"select 1\"\nmin = 1\nmax = 2");
        assert!(matches!(
            band.judge(Some(0.5)).verdict,
            GateVerdict::Fail(_)
        ));
        assert_eq!(band.judge(Some(1.5)).verdict, GateVerdict::Pass);
    }

    #[test]
    fn metric_checks_need_a_sample() {
        let errors = check(
            "name = \"e\"\nmetric = \"error_rate\"\nmax = 0.01\nmin_invocations = 100\ngates = [\"cutover\", \"contract\"]",
        );
        assert_eq!(errors.problem(), None);
        let metrics = |invocations: f64, errors: f64| VersionMetrics {
            version: "7".into(),
            invocations,
            errors,
            ..VersionMetrics::default()
        };
        assert!(matches!(
            errors.judge_metrics(&metrics(99.0, 0.0)).verdict,
            GateVerdict::Inconclusive(_)
        ));
        assert_eq!(
            errors.judge_metrics(&metrics(1_000.0, 5.0)).verdict,
            GateVerdict::Pass
        );
        assert!(matches!(
            errors.judge_metrics(&metrics(1_000.0, 50.0)).verdict,
            GateVerdict::Fail(_)
        ));
        let p99 = check("name = \"l\"\nmetric = \"p99\"\nmax = 300");
        assert!(matches!(
            p99.judge_metrics(&metrics(1_000.0, 0.0)).verdict,
            GateVerdict::Inconclusive(_)
        ));
    }

    #[test]
    fn unusable_checks_are_refused() {
        let cases = [
            ("name = \"x\"\nmax = 0", "exactly one of"),
            (
                "name = \"x\"\nquery = \"select 1\"\nmetric = \"p99\"\nmax = 0",
                "exactly one of",
            ),
            ("name = \"x\"\nquery = \"select 1\"", "give a threshold"),
            (
                "name = \"x\"\nquery = \"UPDATE users SET a = 1\"\nmax = 0",
                "must be one SELECT",
            ),
            (
                "name = \"x\"\nquery = \"DELETE FROM t\"\nmax = 0",
                "must be one SELECT",
            ),
            ("name = \"x y\"\nquery = \"select 1\"\nmax = 0", "name must"),
            (
                "name = \"x\"\nmetric = \"p99\"\nmax = 0\nmin_invocations = 0",
                "at least 1",
            ),
            (
                "name = \"x\"\nquery = \"select 1\"\nmax = 0\ngates = []",
                "names no gate",
            ),
        ];
        for (text, expected) in cases {
            let problem = check(text).problem().unwrap_or_default();
            assert!(problem.contains(expected), "{text}: {problem}");
        }
        assert!(
            toml::from_str::<CheckConfig>(
                "name = \"x\"\nquery = \"select 1\"\nmax = 0\ngates = [\"rollout\"]"
            )
            .is_err()
        );
    }
}
