//! Which versions of a function can still run: what its aliases route to, what event source
//! mappings and provisioned concurrency point at, `$LATEST` (anything may invoke it without a
//! qualifier), and any other version invoked in the observation window.

use std::time::Duration;

use shiftguard_core::release::approval::LiveVersion;
use shiftguard_core::release::gate::VersionStamp;
use shiftguard_core::release::ports::LiveEvidence;
use shiftguard_core::release::{DecisionError, FunctionLive};

use crate::cloudwatch::CloudWatchAdapter;
use crate::error::AwsError;
use crate::lambda::{LambdaAdapter, lambda_error};

/// The live-version evidence on AWS: Lambda's aliases, versions, event source mappings and
/// provisioned concurrency, and CloudWatch's invocation counts.
#[derive(Clone, Debug)]
pub struct LiveOnAws {
    pub lambda: LambdaAdapter,
    pub cloudwatch: CloudWatchAdapter,
}

impl LiveEvidence for LiveOnAws {
    async fn live_versions(
        &self,
        function: &str,
        window: Duration,
        watch: &(dyn Fn(&VersionStamp) -> bool + Sync),
    ) -> Result<FunctionLive, DecisionError> {
        lambda_error(live_versions(&self.lambda, &self.cloudwatch, function, window, watch).await)
    }

    async fn functions_tagged(&self, key: &str, value: &str) -> Result<Vec<String>, DecisionError> {
        lambda_error(self.lambda.functions_tagged(key, value).await)
    }
}

/// Reads what of `function` can still run. Versions nothing points at are looked up in
/// CloudWatch (invocations in `window`) only when `watch` says their running would matter,
/// e.g. they could not run on the database being considered.
pub async fn live_versions(
    lambda: &LambdaAdapter,
    cloudwatch: &CloudWatchAdapter,
    function: &str,
    window: Duration,
    watch: impl Fn(&VersionStamp) -> bool,
) -> Result<FunctionLive, AwsError> {
    let aliases = lambda.aliases(function).await?;
    let versions = lambda.versions(function).await?;
    let mappings = lambda.event_source_mappings(function).await?;
    let provisioned = lambda.provisioned_concurrency(function).await?;

    let mut because: Vec<(String, Vec<String>)> = Vec::new();
    note(
        &mut because,
        "$LATEST",
        "invocable without a qualifier".to_owned(),
    );
    for alias in &aliases {
        let primary = format!("alias {} (primary)", alias.alias);
        note(&mut because, &alias.primary, primary);
        for (version, weight) in &alias.additional {
            let why = format!("alias {} at {:.0}%", alias.alias, weight * 100.0);
            note(&mut because, version, why);
        }
    }
    // A qualifier is a version, an alias (whose versions count already), or none ($LATEST).
    let pointed = mappings
        .iter()
        .map(|(id, q)| (q.clone(), format!("event source mapping {id}")))
        .chain(
            provisioned
                .iter()
                .map(|q| (Some(q.clone()), format!("provisioned concurrency on {q}"))),
        );
    for (qualifier, why) in pointed {
        match qualifier {
            None => note(&mut because, "$LATEST", why),
            Some(q) if aliases.iter().any(|a| a.alias == q) => {}
            Some(q) => note(&mut because, &q, why),
        }
    }

    let unwatched: Vec<String> = versions
        .iter()
        .filter(|v| !because.iter().any(|(live, _)| live == &v.version) && watch(v))
        .map(|v| v.version.clone())
        .collect();
    if !unwatched.is_empty() {
        let alias_names: Vec<String> = aliases.iter().map(|a| a.alias.clone()).collect();
        let counts = cloudwatch
            .invocations(function, &alias_names, &unwatched, window)
            .await?;
        for (version, count) in counts.into_iter().filter(|(_, n)| *n > 0.0) {
            note(
                &mut because,
                &version,
                format!(
                    "invoked {count} times in the last {} min",
                    window.as_secs() / 60
                ),
            );
        }
    }

    let live = because
        .into_iter()
        .map(|(version, because)| LiveVersion {
            function: function.to_owned(),
            // A version the listing lacks (deleted, or an alias pointing at nothing known)
            // has no stamp: the rule fails it, closed.
            stamp: versions
                .iter()
                .find(|v| v.version == version)
                .cloned()
                .unwrap_or(VersionStamp {
                    version,
                    schema_revision: None,
                    required_backfills: Vec::new(),
                }),
            because,
        })
        .collect();
    Ok(FunctionLive {
        function: function.to_owned(),
        aliases,
        live,
    })
}

fn note(because: &mut Vec<(String, Vec<String>)>, version: &str, why: String) {
    match because.iter_mut().find(|(v, _)| v == version) {
        Some((_, reasons)) => reasons.push(why),
        None => because.push((version.to_owned(), vec![why])),
    }
}
