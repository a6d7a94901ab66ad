//! Lambda: what a published version says about itself (its environment snapshot is immutable,
//! so its schema stamp is trustworthy history).

use aws_sdk_lambda::Client;
use shiftguard_core::gate::VersionStamp;

use crate::error::AwsError;

/// The environment variable holding a build's Alembic head.
pub const SCHEMA_REVISION_VARIABLE: &str = "SHIFTGUARD_SCHEMA_REVISION";
/// The environment variable listing the backfills a build needs complete (comma-separated).
pub const REQUIRED_BACKFILLS_VARIABLE: &str = "SHIFTGUARD_REQUIRED_BACKFILLS";

/// Lambda reads on behalf of the gates.
#[derive(Clone, Debug)]
pub struct LambdaAdapter {
    client: Client,
}

impl LambdaAdapter {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        LambdaAdapter {
            client: Client::new(config),
        }
    }

    /// The schema stamp and required backfills of `function` at `version`.
    pub async fn version_stamp(
        &self,
        function: &str,
        version: &str,
    ) -> Result<VersionStamp, AwsError> {
        let output = self
            .client
            .get_function_configuration()
            .function_name(function)
            .qualifier(version)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    &format!("GetFunctionConfiguration {function}:{version}"),
                    &e,
                )
            })?;
        let variables = output.environment().and_then(|e| e.variables());
        let variable = |name: &str| {
            variables
                .and_then(|v| v.get(name))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Ok(VersionStamp {
            version: version.to_owned(),
            schema_revision: variable(SCHEMA_REVISION_VARIABLE),
            required_backfills: variable(REQUIRED_BACKFILLS_VARIABLE)
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}
