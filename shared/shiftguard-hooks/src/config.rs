//! Everything the hooks read from their environment, in one place. Taken through a lookup
//! function so tests pass a map instead of changing the process environment.

use std::path::PathBuf;
use std::time::Duration;

use shiftguard_aws::secrets::DatabaseSource;
use shiftguard_aws::{Environment, NotifyTargets};
use shiftguard_core::release::decide::{Smoke, TrafficSettings};
use shiftguard_core::release::gate::{GateSelection, HealthBudget, InconclusivePolicy};
use shiftguard_core::release::load::LoadBudget;

/// The hook's settings.
#[derive(Clone, Debug)]
pub struct HookConfig {
    /// `SHIFTGUARD_MANIFEST`: the manifest `shiftguard manifest` wrote at build time, packaged
    /// with the function (default `$LAMBDA_TASK_ROOT/manifest.json`).
    pub manifest_path: PathBuf,
    /// `SHIFTGUARD_CONFIG`: shiftguard.toml, for the backfills versions may require (optional;
    /// default `$LAMBDA_TASK_ROOT/shiftguard.toml` when it exists).
    pub config_path: Option<PathBuf>,
    /// `DATABASE_URL` or `DATABASE_SECRET_ARN`.
    pub database: DatabaseSource,
    /// `SHIFTGUARD_VERSION_TABLE` (default `alembic_version`).
    pub version_table: String,
    /// `SHIFTGUARD_HOLDS_TABLE`: the DynamoDB table of operators' holds (`shiftguard hold`);
    /// unset, nothing is ever held.
    pub holds_table: Option<String>,
    /// `SHIFTGUARD_NOTIFY_TOPIC_ARN` and `SHIFTGUARD_NOTIFY_EVENT_BUS`: where the monitor tells
    /// of a verdict that changed (SNS, EventBridge); unset, nowhere.
    pub notify: NotifyTargets,
    /// `SHIFTGUARD_DEADLINE_MARGIN_MS` (default 3000): report Failed this long before the
    /// invocation's deadline rather than be killed without reporting.
    pub deadline_margin: Duration,
    /// How the traffic decisions judge health:
    /// `SHIFTGUARD_MAX_ERROR_RATE` (0.01), `SHIFTGUARD_MAX_ERROR_RATIO` (2 x the current
    /// version's rate), `SHIFTGUARD_MAX_P95_MS` and `SHIFTGUARD_MAX_P99_MS` (none),
    /// `SHIFTGUARD_MAX_LATENCY_RATIO` (1.5 x the current version's p95/p99),
    /// `SHIFTGUARD_MIN_INVOCATIONS` (50), `SHIFTGUARD_INCONCLUSIVE` (`fail` or `pass`, default
    /// fail), `SHIFTGUARD_METRICS_WINDOW_SECONDS` (300); and the pre-traffic smoke test,
    /// optional: `SHIFTGUARD_SMOKE_PAYLOAD` (an event to invoke the target version with) and
    /// `SHIFTGUARD_SMOKE_EXPECT` (text its response must contain; default: any); and
    /// `SHIFTGUARD_OBSERVE_GATES`, gates evaluated and recorded but not deciding (comma-separated
    /// names or prefixes ending in `*`, added to `[gates] observe`); and the monitor's
    /// per-version database gates, off unless `SHIFTGUARD_DATABASE_SAMPLE_SECONDS` is set (1 – 60):
    /// `SHIFTGUARD_MAX_DATABASE_TIME_RATIO` (2), `SHIFTGUARD_MAX_DATABASE_BLOCKS_RATIO` (4,
    /// PostgreSQL), `SHIFTGUARD_MAX_DATABASE_ROWS_EXAMINED_RATIO` (4, MySQL/MariaDB),
    /// `SHIFTGUARD_MIN_DATABASE_CALLS` (50), and `SHIFTGUARD_DATABASE_ROLES` (required with
    /// them: the app's own database users, comma-separated; only their sessions count).
    pub settings: TrafficSettings,
}

/// Lambda's longest invocation, in milliseconds: no latency budget can be above it.
const LAMBDA_MAX_MS: f64 = 900_000.0;

/// The longest metrics window, in seconds (CloudWatch answers per-minute data for 15 days,
/// coarser for longer; a month is as far back as a canary judgement can mean anything).
const THIRTY_DAYS_S: f64 = 2_592_000.0;

/// `SHIFTGUARD_DEADLINE_MARGIN_MS`: 100 ms to 60 s, 3 s when unset.
pub fn deadline_margin(lookup: impl Fn(&str) -> Option<String>) -> Result<Duration, String> {
    Environment::new(lookup).millis(
        "SHIFTGUARD_DEADLINE_MARGIN_MS",
        Duration::from_secs(3),
        100..=60_000,
    )
}

impl HookConfig {
    /// Reads the settings; the error names the variable at fault.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let env = Environment::new(&lookup);
        let defaults = HealthBudget::default();
        let budget = HealthBudget {
            max_error_rate: env
                .number("SHIFTGUARD_MAX_ERROR_RATE", 0.0..=1.0)?
                .unwrap_or(defaults.max_error_rate),
            max_error_ratio: env
                .number("SHIFTGUARD_MAX_ERROR_RATIO", 0.0..=1_000.0)?
                .unwrap_or(defaults.max_error_ratio),
            max_p95_ms: env.number("SHIFTGUARD_MAX_P95_MS", 0.0..=LAMBDA_MAX_MS)?,
            max_p99_ms: env.number("SHIFTGUARD_MAX_P99_MS", 0.0..=LAMBDA_MAX_MS)?,
            max_latency_ratio: env
                .number("SHIFTGUARD_MAX_LATENCY_RATIO", 0.0..=1_000.0)?
                .unwrap_or(defaults.max_latency_ratio),
            min_invocations: env
                .number("SHIFTGUARD_MIN_INVOCATIONS", 0.0..=1e12)?
                .map_or(defaults.min_invocations, |n| n as u64),
            inconclusive: match env.get("SHIFTGUARD_INCONCLUSIVE").as_deref() {
                None | Some("fail") => InconclusivePolicy::Fail,
                Some("pass") => InconclusivePolicy::Pass,
                Some(other) => {
                    return Err(format!(
                        "SHIFTGUARD_INCONCLUSIVE is `{other}`: expected fail or pass"
                    ));
                }
            },
        };
        let metrics_window = Duration::from_secs(
            env.number("SHIFTGUARD_METRICS_WINDOW_SECONDS", 60.0..=THIRTY_DAYS_S)?
                .map_or(300, |n| n as u64),
        );
        let observe =
            GateSelection::parse_list(&env.get("SHIFTGUARD_OBSERVE_GATES").unwrap_or_default())
                .map_err(|problem| format!("SHIFTGUARD_OBSERVE_GATES: {problem}"))?;
        let load_defaults = LoadBudget::default();
        let load = LoadBudget {
            sample: Duration::from_secs(
                env.number("SHIFTGUARD_DATABASE_SAMPLE_SECONDS", 1.0..=60.0)?
                    .map_or(0, |n| n as u64),
            ),
            max_time_ratio: env
                .number("SHIFTGUARD_MAX_DATABASE_TIME_RATIO", 1.0..=1_000.0)?
                .unwrap_or(load_defaults.max_time_ratio),
            max_blocks_ratio: env
                .number("SHIFTGUARD_MAX_DATABASE_BLOCKS_RATIO", 1.0..=1_000.0)?
                .unwrap_or(load_defaults.max_blocks_ratio),
            max_rows_examined_ratio: env
                .number("SHIFTGUARD_MAX_DATABASE_ROWS_EXAMINED_RATIO", 1.0..=1_000.0)?
                .unwrap_or(load_defaults.max_rows_examined_ratio),
            min_calls: env
                .number("SHIFTGUARD_MIN_DATABASE_CALLS", 1.0..=1e12)?
                .map_or(load_defaults.min_calls, |n| n as u64),
            roles: env
                .get("SHIFTGUARD_DATABASE_ROLES")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|role| !role.is_empty())
                .map(str::to_owned)
                .collect(),
            ..load_defaults
        };
        if load.enabled() && load.roles.is_empty() {
            return Err(
                "SHIFTGUARD_DATABASE_ROLES must name the app's database users when SHIFTGUARD_DATABASE_SAMPLE_SECONDS is set: only their sessions are sampled (a tag alone is not trusted)"
                    .to_owned(),
            );
        }
        let smoke = env.get("SHIFTGUARD_SMOKE_PAYLOAD").map(|payload| Smoke {
            payload,
            expect: env.raw("SHIFTGUARD_SMOKE_EXPECT").unwrap_or_default(),
        });
        Ok(HookConfig {
            manifest_path: env.task_file("SHIFTGUARD_MANIFEST", "manifest.json"),
            config_path: env.optional_task_file("SHIFTGUARD_CONFIG", "shiftguard.toml"),
            database: env.database()?,
            version_table: env
                .get("SHIFTGUARD_VERSION_TABLE")
                .unwrap_or_else(|| "alembic_version".to_owned()),
            holds_table: env.get("SHIFTGUARD_HOLDS_TABLE"),
            notify: NotifyTargets::from_lookup(&lookup)?,
            deadline_margin: deadline_margin(&lookup)?,
            settings: TrafficSettings {
                budget,
                metrics_window,
                compare_with_current: true,
                smoke,
                observe,
                load,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<HookConfig, String> {
        HookConfig::from_lookup(shiftguard_aws::environment::fixed(pairs))
    }

    #[test]
    fn defaults_and_overrides() {
        let config = read(&[
            ("DATABASE_URL", "postgres://db/app"),
            ("LAMBDA_TASK_ROOT", "/var/task"),
        ])
        .expect("valid");
        assert_eq!(
            config.manifest_path,
            PathBuf::from("/var/task/manifest.json")
        );
        assert_eq!(config.settings, TrafficSettings::default());
        let config = read(&[
            ("DATABASE_URL", "postgres://db/app"),
            ("SHIFTGUARD_MAX_ERROR_RATE", "0.05"),
            ("SHIFTGUARD_INCONCLUSIVE", "pass"),
            ("SHIFTGUARD_MIN_INVOCATIONS", "10"),
            ("SHIFTGUARD_SMOKE_PAYLOAD", "{\"ping\": 1}"),
            ("SHIFTGUARD_OBSERVE_GATES", "health:p99, check:*"),
        ])
        .expect("valid");
        assert!(config.settings.observe.matches("check:lag"));
        assert!(!config.settings.observe.matches("health:p95"));
        assert_eq!(
            config.settings.smoke,
            Some(Smoke {
                payload: "{\"ping\": 1}".to_owned(),
                expect: String::new()
            })
        );
        assert_eq!(config.settings.budget.max_error_rate, 0.05);
        assert_eq!(config.settings.budget.min_invocations, 10);
        assert_eq!(
            config.settings.budget.inconclusive,
            InconclusivePolicy::Pass
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let cases = [
            (
                ("SHIFTGUARD_MAX_ERROR_RATE", "lots"),
                "SHIFTGUARD_MAX_ERROR_RATE is `lots`",
            ),
            (
                ("SHIFTGUARD_INCONCLUSIVE", "maybe"),
                "SHIFTGUARD_INCONCLUSIVE is `maybe`",
            ),
            (
                ("SHIFTGUARD_OBSERVE_GATES", "health:p99,health p95"),
                "SHIFTGUARD_OBSERVE_GATES: `health p95` is not a gate name",
            ),
        ];
        for ((name, value), expected) in cases {
            let error = read(&[("DATABASE_URL", "postgres://db/app"), (name, value)])
                .map(|_| ())
                .expect_err(name);
            assert!(error.starts_with(expected), "{error}");
        }
        assert_eq!(
            read(&[]).map(|_| ()),
            Err("set DATABASE_URL or DATABASE_SECRET_ARN".to_owned())
        );
        // The database gates count only the app's own roles: sampling without them is refused.
        let sampled = [
            ("DATABASE_URL", "postgres://db/app"),
            ("SHIFTGUARD_DATABASE_SAMPLE_SECONDS", "5"),
        ];
        assert!(
            read(&sampled)
                .map(|_| ())
                .expect_err("roles required")
                .starts_with("SHIFTGUARD_DATABASE_ROLES must name the app's database users")
        );
        let config = read(&[
            sampled[0],
            sampled[1],
            ("SHIFTGUARD_DATABASE_ROLES", " users_api, users_worker ,"),
        ])
        .expect("valid");
        assert_eq!(config.settings.load.roles, ["users_api", "users_worker"]);
    }

    #[test]
    fn every_number_has_a_range_checked_at_the_edges_and_one_past() {
        let cases = [
            (
                "SHIFTGUARD_DEADLINE_MARGIN_MS",
                "100",
                "60000",
                "99",
                "60001",
            ),
            ("SHIFTGUARD_MAX_ERROR_RATE", "0", "1", "", "1.01"),
            ("SHIFTGUARD_MAX_ERROR_RATIO", "0", "1000", "", "1000.5"),
            ("SHIFTGUARD_MAX_P95_MS", "0", "900000", "", "900001"),
            ("SHIFTGUARD_MAX_P99_MS", "0", "900000", "", "900001"),
            ("SHIFTGUARD_MAX_LATENCY_RATIO", "0", "1000", "", "1001"),
            (
                "SHIFTGUARD_MIN_INVOCATIONS",
                "0",
                "1000000000000",
                "",
                "1000000000001",
            ),
            (
                "SHIFTGUARD_METRICS_WINDOW_SECONDS",
                "60",
                "2592000",
                "59",
                "2592001",
            ),
            ("SHIFTGUARD_DATABASE_SAMPLE_SECONDS", "1", "60", "0", "61"),
            (
                "SHIFTGUARD_MAX_DATABASE_TIME_RATIO",
                "1",
                "1000",
                "0.5",
                "1001",
            ),
            (
                "SHIFTGUARD_MAX_DATABASE_BLOCKS_RATIO",
                "1",
                "1000",
                "0.5",
                "1001",
            ),
            (
                "SHIFTGUARD_MAX_DATABASE_ROWS_EXAMINED_RATIO",
                "1",
                "1000",
                "0.5",
                "1001",
            ),
            (
                "SHIFTGUARD_MIN_DATABASE_CALLS",
                "1",
                "1000000000000",
                "0",
                "1000000000001",
            ),
        ];
        for (name, low, high, under, over) in cases {
            for fits in [low, high] {
                let read = read(&[
                    ("DATABASE_URL", "postgres://db/app"),
                    ("SHIFTGUARD_DATABASE_ROLES", "app"),
                    (name, fits),
                ]);
                assert!(read.is_ok(), "{name} = {fits}: {:?}", read.err());
            }
            for misfit in [under, over].into_iter().filter(|v| !v.is_empty()) {
                let error = read(&[("DATABASE_URL", "postgres://db/app"), (name, misfit)])
                    .map(|_| ())
                    .expect_err(name);
                assert!(
                    error.starts_with(&format!("{name} = {misfit} is out of range")),
                    "{error}"
                );
            }
        }
    }
}
