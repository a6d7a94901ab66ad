//! Lambda: what a published version says about itself (its environment snapshot is immutable,
//! so its schema stamp is trustworthy history).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_lambda::Client;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, EnvironmentResponse};
use shiftguard_core::release::approval::Shift;
use shiftguard_core::release::gate::{SmokeOutcome, VersionStamp};
use shiftguard_core::release::ports::FunctionVersions;
use shiftguard_core::release::{DecisionError, Routing};

use crate::error::AwsError;

/// The environment variable holding a build's Alembic head.
pub const SCHEMA_REVISION_VARIABLE: &str = "SHIFTGUARD_SCHEMA_REVISION";
/// The environment variable listing the backfills a build needs complete (comma-separated).
pub const REQUIRED_BACKFILLS_VARIABLE: &str = "SHIFTGUARD_REQUIRED_BACKFILLS";

/// A version's stamp from its configuration's environment snapshot.
fn stamp(version: &str, environment: Option<&EnvironmentResponse>) -> VersionStamp {
    let variables = environment.and_then(|e| e.variables());
    let variable = |name: &str| {
        variables
            .and_then(|v| v.get(name))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    VersionStamp {
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
    }
}

/// An alias's additional versions and their weights.
fn weights(routing: Option<&AliasRoutingConfiguration>) -> Vec<(String, f64)> {
    routing
        .and_then(|r| r.additional_version_weights())
        .map(|w| w.iter().map(|(v, w)| (v.clone(), *w)).collect())
        .unwrap_or_default()
}

/// `arn:aws:lambda:region:account:function:name[:qualifier]` -> (name, qualifier).
pub fn split_function_arn(arn: &str) -> Option<(&str, Option<String>)> {
    let rest = arn.split_once(":function:")?.1;
    Some(match rest.split_once(':') {
        Some((name, qualifier)) => (name, Some(qualifier.to_owned())),
        None => (rest, None),
    })
}

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

    /// An alias's routing: its primary version and the weights of additional versions.
    pub async fn alias_routing(&self, function: &str, alias: &str) -> Result<Routing, AwsError> {
        let output = self
            .client
            .get_alias()
            .function_name(function)
            .name(alias)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&format!("GetAlias {function}:{alias}"), &e))?;
        let primary = output.function_version().unwrap_or_default().to_owned();
        Ok(Routing {
            primary,
            additional: weights(output.routing_config()),
        })
    }

    /// Invokes `function` at `version` synchronously with `payload`; returns the function error
    /// (Lambda's `FunctionError`, when the code failed) and the response body.
    pub async fn invoke(
        &self,
        function: &str,
        version: &str,
        payload: &str,
    ) -> Result<SmokeOutcome, AwsError> {
        let output = self
            .client
            .invoke()
            .function_name(function)
            .qualifier(version)
            .payload(aws_sdk_lambda::primitives::Blob::new(
                payload.as_bytes().to_vec(),
            ))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&format!("Invoke {function}:{version}"), &e))?;
        Ok(SmokeOutcome {
            function_error: output.function_error().map(str::to_owned),
            body: output
                .payload()
                .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                .unwrap_or_default(),
        })
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
        Ok(stamp(version, output.environment()))
    }

    /// Every alias of `function` with its routing.
    pub async fn aliases(&self, function: &str) -> Result<Vec<Shift>, AwsError> {
        let aliases: Vec<_> = self
            .client
            .list_aliases()
            .function_name(function)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| AwsError::from_sdk(&format!("ListAliases {function}"), &e))?;
        Ok(aliases
            .iter()
            .map(|alias| Shift {
                function: function.to_owned(),
                alias: alias.name().unwrap_or_default().to_owned(),
                primary: alias.function_version().unwrap_or_default().to_owned(),
                additional: weights(alias.routing_config()),
            })
            .collect())
    }

    /// Every version of `function` (with `$LATEST`) and its stamp, from one listing.
    pub async fn versions(&self, function: &str) -> Result<Vec<VersionStamp>, AwsError> {
        let versions: Vec<_> = self
            .client
            .list_versions_by_function()
            .function_name(function)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| AwsError::from_sdk(&format!("ListVersionsByFunction {function}"), &e))?;
        Ok(versions
            .iter()
            .map(|v| stamp(v.version().unwrap_or_default(), v.environment()))
            .collect())
    }

    /// The event source mappings that invoke `function`: (mapping id, qualifier; `None` is the
    /// unqualified function, `$LATEST`). Listed account-wide and matched by ARN, so mappings of
    /// every qualifier are found.
    pub async fn event_source_mappings(
        &self,
        function: &str,
    ) -> Result<Vec<(String, Option<String>)>, AwsError> {
        let mappings: Vec<_> = self
            .client
            .list_event_source_mappings()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| AwsError::from_sdk("ListEventSourceMappings", &e))?;
        Ok(mappings
            .iter()
            .filter_map(|m| {
                let (name, qualifier) = split_function_arn(m.function_arn()?)?;
                (name == function).then(|| (m.uuid().unwrap_or_default().to_owned(), qualifier))
            })
            .collect())
    }

    /// The qualifiers (alias or version) that have provisioned concurrency.
    pub async fn provisioned_concurrency(&self, function: &str) -> Result<Vec<String>, AwsError> {
        let configs: Vec<_> = self
            .client
            .list_provisioned_concurrency_configs()
            .function_name(function)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| {
                AwsError::from_sdk(&format!("ListProvisionedConcurrencyConfigs {function}"), &e)
            })?;
        Ok(configs
            .iter()
            .filter_map(|c| split_function_arn(c.function_arn()?)?.1)
            .collect())
    }

    /// The functions tagged `key` = `value` (one ListTags call per function in the account).
    pub async fn functions_tagged(&self, key: &str, value: &str) -> Result<Vec<String>, AwsError> {
        let functions: Vec<_> = self
            .client
            .list_functions()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| AwsError::from_sdk("ListFunctions", &e))?;
        let mut tagged = Vec::new();
        for function in &functions {
            let (Some(name), Some(arn)) = (function.function_name(), function.function_arn())
            else {
                continue;
            };
            let tags = self
                .client
                .list_tags()
                .resource(arn)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&format!("ListTags {name}"), &e))?;
            if tags.tags().and_then(|t| t.get(key)).map(String::as_str) == Some(value) {
                tagged.push(name.to_owned());
            }
        }
        Ok(tagged)
    }
}

impl FunctionVersions for LambdaAdapter {
    async fn stamp(&self, function: &str, version: &str) -> Result<VersionStamp, DecisionError> {
        lambda_error(self.version_stamp(function, version).await)
    }

    async fn versions(&self, function: &str) -> Result<Vec<VersionStamp>, DecisionError> {
        lambda_error(LambdaAdapter::versions(self, function).await)
    }

    async fn routing(&self, function: &str, alias: &str) -> Result<Routing, DecisionError> {
        lambda_error(self.alias_routing(function, alias).await)
    }

    async fn invoke(
        &self,
        function: &str,
        version: &str,
        payload: &str,
    ) -> Result<SmokeOutcome, DecisionError> {
        lambda_error(LambdaAdapter::invoke(self, function, version, payload).await)
    }
}

/// A Lambda call's error as a decision's.
pub(crate) fn lambda_error<T>(result: Result<T, AwsError>) -> Result<T, DecisionError> {
    result.map_err(|e| DecisionError::Lambda(e.message))
}

/// A Lambda invocation's deadline (Unix milliseconds, from its context) as an `Instant`, less a
/// margin kept for reporting before the function is stopped.
///
/// Lambda sends an absolute time. Local runtime emulators (cargo-lambda's) send the timeout
/// itself, a few minutes in milliseconds: a value that cannot be a time of this era (before
/// 2001) is read as milliseconds from now. Any real past deadline still counts as past.
pub fn deadline_instant(deadline_ms: u64, margin: Duration) -> Instant {
    const YEAR_2001_MS: u64 = 978_307_200_000;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left_ms = if deadline_ms < YEAR_2001_MS {
        deadline_ms
    } else {
        deadline_ms.saturating_sub(now_ms)
    };
    Instant::now() + Duration::from_millis(left_ms).saturating_sub(margin)
}

/// Structured JSON logs on stdout, as CloudWatch Logs takes them (one object a line, no colour).
pub fn init_json_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .with_current_span(false)
        .with_ansi(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_absolute_relative_and_past() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .expect("clock");
        let margin = Duration::from_secs(3);
        let left = |instant: Instant| instant.saturating_duration_since(Instant::now());
        let absolute = left(deadline_instant(now_ms + 60_000, margin));
        assert!(absolute > Duration::from_secs(55) && absolute <= Duration::from_secs(57));
        let relative = left(deadline_instant(600_000, margin));
        assert!(relative > Duration::from_secs(590) && relative <= Duration::from_secs(597));
        assert_eq!(
            left(deadline_instant(now_ms - 1_000, margin)),
            Duration::ZERO
        );
    }
}
