//! Everything the backfill Lambda reads from its environment, in one place. Taken through a
//! lookup function so tests pass a map instead of changing the process environment.

use std::path::PathBuf;
use std::time::Duration;

use shiftguard_aws::secrets::DatabaseSource;
use shiftguard_aws::{Environment, NotifyTargets};
use shiftguard_core::backfill::CheckpointStoreKind;

/// The function's settings.
#[derive(Clone, Debug)]
pub struct FunctionConfig {
    /// `SHIFTGUARD_CONFIG`: the shiftguard.toml packaged with the function
    /// (default `$LAMBDA_TASK_ROOT/shiftguard.toml`).
    pub config_path: PathBuf,
    pub database: DatabaseSource,
    /// `SHIFTGUARD_CHECKPOINT` (`sql` or `dynamodb`): overrides `[checkpoint] store`.
    pub checkpoint_store: Option<CheckpointStoreKind>,
    /// `SHIFTGUARD_CHECKPOINT_TABLE`: overrides `[checkpoint] table`.
    pub checkpoint_table: Option<String>,
    /// `SHIFTGUARD_DEADLINE_MARGIN_MS` (default 5000): stop this long before the invocation's
    /// deadline, leaving time to commit, release the lease and report.
    pub deadline_margin: Duration,
    /// `SHIFTGUARD_NOTIFY_TOPIC_ARN` and `SHIFTGUARD_NOTIFY_EVENT_BUS`: where a completion, a
    /// failure or a stall is told (SNS, EventBridge); unset, nowhere.
    pub notify: NotifyTargets,
}

impl FunctionConfig {
    /// Reads the settings; the error names the variable at fault.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let env = Environment::new(&lookup);
        let checkpoint_store = match env.get("SHIFTGUARD_CHECKPOINT").as_deref() {
            None => None,
            Some("sql") => Some(CheckpointStoreKind::Sql),
            Some("dynamodb") => Some(CheckpointStoreKind::Dynamodb),
            Some(other) => {
                return Err(format!(
                    "SHIFTGUARD_CHECKPOINT is `{other}`: expected sql or dynamodb"
                ));
            }
        };
        Ok(FunctionConfig {
            notify: NotifyTargets::from_lookup(&lookup)?,
            config_path: env.task_file("SHIFTGUARD_CONFIG", "shiftguard.toml"),
            database: env.database()?,
            checkpoint_store,
            checkpoint_table: env.get("SHIFTGUARD_CHECKPOINT_TABLE"),
            deadline_margin: env.millis(
                "SHIFTGUARD_DEADLINE_MARGIN_MS",
                Duration::from_secs(5),
                100..=60_000,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<FunctionConfig, String> {
        FunctionConfig::from_lookup(shiftguard_aws::environment::fixed(pairs))
    }

    #[test]
    fn reads_and_defaults() {
        let config = read(&[
            (
                "DATABASE_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:db",
            ),
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("SHIFTGUARD_CHECKPOINT", "dynamodb"),
        ])
        .expect("valid");
        assert_eq!(
            config.config_path,
            PathBuf::from("/var/task/shiftguard.toml")
        );
        assert_eq!(config.checkpoint_store, Some(CheckpointStoreKind::Dynamodb));
        assert_eq!(config.deadline_margin, Duration::from_secs(5));
        assert!(matches!(config.database, DatabaseSource::Secret(_)));
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            read(&[]).map(|_| ()),
            Err("set DATABASE_URL or DATABASE_SECRET_ARN".to_owned())
        );
        let error = read(&[
            ("DATABASE_URL", "postgres://db/x"),
            ("SHIFTGUARD_CHECKPOINT", "redis"),
        ])
        .map(|_| ())
        .expect_err("bad store");
        assert!(error.starts_with("SHIFTGUARD_CHECKPOINT is `redis`"));
        let debug = format!(
            "{:?}",
            read(&[("DATABASE_URL", "postgres://u:pw@db/x")]).expect("valid")
        );
        assert!(!debug.contains("pw"), "{debug}");
    }
}
