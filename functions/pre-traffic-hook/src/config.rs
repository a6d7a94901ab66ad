//! Everything the pre-traffic hook reads from its environment, in one place. Taken through a
//! lookup function so tests pass a map instead of changing the process environment.

use std::path::PathBuf;
use std::time::Duration;

use shiftguard_aws::secrets::DatabaseSource;

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
    /// `SHIFTGUARD_DEADLINE_MARGIN_MS` (default 3000): report Failed this long before the
    /// invocation's deadline rather than be killed without reporting.
    pub deadline_margin: Duration,
}

impl HookConfig {
    /// Reads the settings; the error names the variable at fault.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let task_root = non_empty("LAMBDA_TASK_ROOT").map(PathBuf::from);
        let manifest_path = non_empty("SHIFTGUARD_MANIFEST")
            .map(PathBuf::from)
            .or_else(|| task_root.as_ref().map(|root| root.join("manifest.json")))
            .unwrap_or_else(|| PathBuf::from("manifest.json"));
        let config_path = non_empty("SHIFTGUARD_CONFIG")
            .map(PathBuf::from)
            .or_else(|| {
                task_root
                    .map(|root| root.join("shiftguard.toml"))
                    .filter(|path| path.exists())
            });
        let deadline_margin = match non_empty("SHIFTGUARD_DEADLINE_MARGIN_MS") {
            None => Duration::from_secs(3),
            Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
                format!("SHIFTGUARD_DEADLINE_MARGIN_MS is `{ms}`: expected milliseconds")
            })?),
        };
        Ok(HookConfig {
            manifest_path,
            config_path,
            database: DatabaseSource::from_lookup(&lookup)?,
            version_table: non_empty("SHIFTGUARD_VERSION_TABLE")
                .unwrap_or_else(|| "alembic_version".to_owned()),
            deadline_margin,
        })
    }
}
